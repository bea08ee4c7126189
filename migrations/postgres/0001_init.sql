-- scimd SQL projection, schema version 1: PostgreSQL.
--
-- A template, not plain SQL: the table names are chosen at run time (USER_MODEL_NAME /
-- GROUP_MODEL_NAME, default Users / Groups), so scimd replaces {users} and {groups} with the quoted
-- names before running it. It is embedded in the binary (include_str! in
-- projections/src/sql/postgres.rs) and applied when the projection connects: in one transaction,
-- under an advisory lock, if scimd_schema_version has no version >= 1 for this pair of tables.
-- A statement ends with `;` at the end of a line; lines starting with `--` are skipped.
-- Statements are idempotent, so tables an earlier server created (id + details) are kept as they are.
--
-- Applications query the documents with the JSON operators: details->>'userName'.

CREATE TABLE IF NOT EXISTS {users} (
    id      VARCHAR(255) PRIMARY KEY,
    details JSONB NOT NULL
);

CREATE TABLE IF NOT EXISTS {groups} (
    id      VARCHAR(255) PRIMARY KEY,
    details JSONB NOT NULL
);

-- The log position the data reflects, one row per projection ('sql:Users,Groups'), written in the
-- same transaction as the rows.
CREATE TABLE IF NOT EXISTS scimd_checkpoint (
    name     VARCHAR(255) PRIMARY KEY,
    position BIGINT NOT NULL
);
