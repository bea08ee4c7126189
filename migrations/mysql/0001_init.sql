-- scimd SQL projection, schema version 1: MySQL 5.7+ and MariaDB 10.2+.
--
-- A template, not plain SQL: the table names are chosen at run time (USER_MODEL_NAME /
-- GROUP_MODEL_NAME, default Users / Groups), so scimd replaces {users} and {groups} with the quoted
-- names before running it. It is embedded in the binary (include_str! in
-- projections/src/sql/mysql.rs) and applied when the projection connects, under GET_LOCK('scimd_schema'),
-- if scimd_schema_version has no version >= 1 for this pair of tables. MySQL commits each DDL
-- statement on its own, so every statement is idempotent and a migration cut short is run again.
-- A statement ends with `;` at the end of a line; lines starting with `--` are skipped.
--
-- On MariaDB, JSON is an alias of LONGTEXT with a JSON_VALID check. Applications query the
-- documents with JSON_EXTRACT(details, '$.userName') (MariaDB has no -> operator).
-- Ids compare byte for byte (utf8mb4_bin): two ids differing only in case are two rows.

CREATE TABLE IF NOT EXISTS {users} (
    id      VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
    details JSON NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS {groups} (
    id      VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
    details JSON NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- The log position the data reflects, one row per projection ('sql:Users,Groups'), written in the
-- same transaction as the rows.
CREATE TABLE IF NOT EXISTS scimd_checkpoint (
    name     VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
    position BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
