//! Recursive-descent parser for RFC 7644 §3.4.2.2 filters, bounded by [`Limits`].
//!
//! ```text
//! filter    = and *("or" and)
//! and       = unary *("and" unary)
//! unary     = "not" "(" filter ")" / "(" filter ")" / attrPath "[" filter "]" / attrExp
//! attrExp   = attrPath "pr" / attrPath compareOp compValue
//! ```

use super::lexer::{Token, tokens};
use super::number::Decimal;
use super::{Filter, FilterError, Limits, Literal, Op, PathText};

/// Parses `input` within `limits`. Every failure says at which column and why.
pub fn parse(input: &str, limits: &Limits) -> Result<Filter, FilterError> {
    let length = input.chars().count();
    if length > limits.max_length {
        return Err(FilterError::new(
            limits.max_length + 1,
            format!(
                "the filter is {length} characters long; at most {} are allowed",
                limits.max_length
            ),
        ));
    }
    let tokens = tokens(input)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        end: length + 1,
        limits,
        terms: 0,
        in_value_path: false,
    };
    if p.tokens.is_empty() {
        return Err(FilterError::new(1, "the filter is empty"));
    }
    let filter = p.or(0)?;
    if let Some((t, column)) = p.tokens.get(p.pos) {
        let what = match t {
            Token::RParen => "a ')' without a matching '('".to_owned(),
            Token::RBracket => "a ']' without a matching '['".to_owned(),
            _ => format!("{} where 'and', 'or' or the end was expected", describe(t)),
        };
        return Err(FilterError::new(*column, what));
    }
    Ok(filter)
}

fn describe(t: &Token) -> String {
    match t {
        Token::LParen => "'('".into(),
        Token::RParen => "')'".into(),
        Token::LBracket => "'['".into(),
        Token::RBracket => "']'".into(),
        Token::Str(_) => "a string".into(),
        Token::Word(w) => format!("'{}'", w.chars().take(40).collect::<String>()),
    }
}

struct Parser<'a> {
    tokens: Vec<(Token, usize)>,
    pos: usize,
    /// The column just past the input, for "ended early" errors.
    end: usize,
    limits: &'a Limits,
    terms: usize,
    in_value_path: bool,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&(Token, usize)> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<(Token, usize)> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Some((Token::Word(w), _)) if w.eq_ignore_ascii_case(keyword))
    }

    fn depth(&self, depth: usize, column: usize) -> Result<usize, FilterError> {
        if depth >= self.limits.max_depth {
            return Err(FilterError::new(
                column,
                format!("nesting deeper than {} levels", self.limits.max_depth),
            ));
        }
        Ok(depth + 1)
    }

    fn or(&mut self, depth: usize) -> Result<Filter, FilterError> {
        let mut left = self.and(depth)?;
        while self.peek_keyword("or") {
            self.pos += 1;
            let right = self.and(depth)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Filter, FilterError> {
        let mut left = self.unary(depth)?;
        while self.peek_keyword("and") {
            self.pos += 1;
            let right = self.unary(depth)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn expect(&mut self, want: &Token, what: &str) -> Result<(), FilterError> {
        match self.next() {
            Some((t, _)) if &t == want => Ok(()),
            Some((t, column)) => Err(FilterError::new(
                column,
                format!("expected {what}, found {}", describe(&t)),
            )),
            None => Err(FilterError::new(
                self.end,
                format!("the filter ended where {what} was expected"),
            )),
        }
    }

    fn unary(&mut self, depth: usize) -> Result<Filter, FilterError> {
        let Some((token, column)) = self.next() else {
            return Err(FilterError::new(
                self.end,
                "the filter ended where an expression was expected",
            ));
        };
        match token {
            Token::LParen => {
                let depth = self.depth(depth, column)?;
                let inner = self.or(depth)?;
                self.expect(&Token::RParen, "')'")?;
                Ok(inner)
            }
            Token::Word(w) if w.eq_ignore_ascii_case("not") => {
                let depth = self.depth(depth, column)?;
                self.expect(&Token::LParen, "'(' after 'not'")?;
                let inner = self.or(depth)?;
                self.expect(&Token::RParen, "')'")?;
                Ok(Filter::Not(Box::new(inner)))
            }
            Token::Word(w) => self.attribute(w, column, depth),
            other => Err(FilterError::new(
                column,
                format!("expected an attribute path, found {}", describe(&other)),
            )),
        }
    }

    fn attribute(
        &mut self,
        text: String,
        column: usize,
        depth: usize,
    ) -> Result<Filter, FilterError> {
        if !valid_path(&text) {
            return Err(FilterError::new(
                column,
                format!(
                    "'{}' is not an attribute path",
                    text.chars().take(40).collect::<String>()
                ),
            ));
        }
        let path = PathText { text, column };
        if matches!(self.peek(), Some((Token::LBracket, _))) {
            let (_, bracket) = self.next().unwrap_or((Token::LBracket, column));
            if self.in_value_path {
                return Err(FilterError::new(bracket, "value paths cannot be nested"));
            }
            let depth = self.depth(depth, bracket)?;
            self.in_value_path = true;
            let inner = self.or(depth);
            self.in_value_path = false;
            let inner = inner?;
            self.expect(&Token::RBracket, "']'")?;
            return Ok(Filter::ValuePath {
                path,
                filter: Box::new(inner),
            });
        }
        self.count_term(column)?;
        let (op_word, op_column) = match self.next() {
            Some((Token::Word(w), c)) => (w, c),
            Some((t, c)) => {
                return Err(FilterError::new(
                    c,
                    format!(
                        "expected an operator after the attribute path, found {}",
                        describe(&t)
                    ),
                ));
            }
            None => {
                return Err(FilterError::new(
                    self.end,
                    "the filter ended where an operator was expected",
                ));
            }
        };
        if op_word.eq_ignore_ascii_case("pr") {
            return Ok(Filter::Present(path));
        }
        let Some(op) = Op::from_word(&op_word) else {
            return Err(FilterError::new(
                op_column,
                format!(
                    "'{}' is not an operator (eq ne co sw ew gt ge lt le pr)",
                    op_word.chars().take(40).collect::<String>()
                ),
            ));
        };
        let value = match self.next() {
            Some((Token::Str(s), _)) => Literal::String(s),
            Some((Token::Word(w), c)) => literal(&w, c)?,
            Some((t, c)) => {
                return Err(FilterError::new(
                    c,
                    format!(
                        "expected a value after '{}', found {}",
                        op.as_str(),
                        describe(&t)
                    ),
                ));
            }
            None => {
                return Err(FilterError::new(
                    self.end,
                    format!(
                        "the filter ended where a value after '{}' was expected",
                        op.as_str()
                    ),
                ));
            }
        };
        Ok(Filter::Compare {
            path,
            op,
            value,
            column: op_column,
        })
    }

    fn count_term(&mut self, column: usize) -> Result<(), FilterError> {
        self.terms += 1;
        if self.terms > self.limits.max_terms {
            return Err(FilterError::new(
                column,
                format!("more than {} comparisons", self.limits.max_terms),
            ));
        }
        Ok(())
    }
}

/// `true`, `false`, `null` or a JSON number.
fn literal(word: &str, column: usize) -> Result<Literal, FilterError> {
    match word {
        "true" => return Ok(Literal::Bool(true)),
        "false" => return Ok(Literal::Bool(false)),
        "null" => return Ok(Literal::Null),
        _ => {}
    }
    Decimal::parse(word).map(Literal::Number).ok_or_else(|| {
        FilterError::new(
            column,
            format!(
                "'{}' is not a value: use a quoted string, true, false, null or a number",
                word.chars().take(40).collect::<String>()
            ),
        )
    })
}

/// RFC 7644 §3.4.2.2 `attrPath`: `[URI ":"] ATTRNAME *1subAttr`, names of letters, digits, `_`,
/// `-` and `$` (for `$ref`); URNs add `:` and `.`.
fn valid_path(text: &str) -> bool {
    let first = text.chars().next();
    first.is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$' | ':' | '.'))
}
