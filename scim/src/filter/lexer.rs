//! Splits a filter into tokens, each with its 1-based column.

use super::FilterError;

/// One token of a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Token {
    LParen,
    RParen,
    LBracket,
    RBracket,
    /// A JSON string literal, escapes decoded.
    Str(String),
    /// Anything else between spaces and brackets: attribute paths, operators, keywords, numbers.
    Word(String),
}

/// The tokens of `input`, each with its column; a malformed string literal is an error.
pub(super) fn tokens(input: &str) -> Result<Vec<(Token, usize)>, FilterError> {
    let chars: Vec<(usize, char)> = input.char_indices().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        let column = i + 1;
        let single = match c {
            '(' => Some(Token::LParen),
            ')' => Some(Token::RParen),
            '[' => Some(Token::LBracket),
            ']' => Some(Token::RBracket),
            _ => None,
        };
        if let Some(t) = single {
            out.push((t, column));
            i += 1;
            continue;
        }
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '"' {
            let mut j = i + 1;
            let mut escaped = false;
            while j < chars.len() {
                let ch = chars[j].1;
                if escaped {
                    escaped = false;
                } else if ch == '\\' {
                    escaped = true;
                } else if ch == '"' {
                    break;
                }
                j += 1;
            }
            if j >= chars.len() {
                return Err(FilterError::new(column, "the string is not closed"));
            }
            let end = chars[j].0 + 1;
            let text = &input[at..end];
            let s: String = serde_json::from_str(text).map_err(|_| {
                FilterError::new(
                    column,
                    "the string is not valid JSON (bad escape or control character)",
                )
            })?;
            out.push((Token::Str(s), column));
            i = j + 1;
            continue;
        }
        let mut j = i;
        while j < chars.len() {
            let ch = chars[j].1;
            if ch.is_whitespace() || matches!(ch, '(' | ')' | '[' | ']' | '"') {
                break;
            }
            j += 1;
        }
        let end = chars.get(j).map_or(input.len(), |(b, _)| *b);
        out.push((Token::Word(input[at..end].to_owned()), column));
        i = j;
    }
    Ok(out)
}
