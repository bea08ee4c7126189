-- scimd SQL projection, schema version 1: SQLite 3.38+ (JSON functions built in).
--
-- A template, not plain SQL: the table names are chosen at run time (USER_MODEL_NAME /
-- GROUP_MODEL_NAME, default Users / Groups), so scimd replaces {users} and {groups} with the quoted
-- names before running it. It is embedded in the binary (include_str! in
-- projections/src/sql/sqlite.rs) and applied when the projection connects, in one BEGIN IMMEDIATE
-- transaction, if scimd_schema_version has no version >= 1 for this pair of tables.
-- A statement ends with `;` at the end of a line; lines starting with `--` are skipped.
-- Statements are idempotent, so tables an earlier server created (id + details) are kept as they are.
--
-- details holds the JSON text: JSON_EXTRACT(details, '$.userName') or details->>'$.userName'.
-- The CHECK keeps ids to 255 characters, as VARCHAR(255) does on the other databases.

CREATE TABLE IF NOT EXISTS {users} (
    id      TEXT PRIMARY KEY NOT NULL CHECK (length(id) <= 255),
    details TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS {groups} (
    id      TEXT PRIMARY KEY NOT NULL CHECK (length(id) <= 255),
    details TEXT NOT NULL
);

-- The log position the data reflects, one row per projection ('sql:Users,Groups'), written in the
-- same transaction as the rows.
CREATE TABLE IF NOT EXISTS scimd_checkpoint (
    name     TEXT PRIMARY KEY NOT NULL,
    position INTEGER NOT NULL
);
