-- linkbot's PostgreSQL schema, version 5: the workspace's chat.update
-- budget as a sliding minute (issue 11 review). Version 4's edit_budget
-- counted fixed minutes, so replicas could spend a whole minute's budget
-- in its last second and the next minute's in the first second after:
-- twice Slack's limit within two seconds, and Slack counts any minute.
--
-- Expand only: one new table; edit_budget stays (a replica that knows
-- only version 4 goes on counting its minutes there during a rolling
-- deploy; a later release drops it).

-- +goose Up

-- One row: the database-clock times (unix nanoseconds) of the edits taken
-- in the last minute, at most the budget's size; each take drops the
-- times that left the minute.
CREATE TABLE edit_window (
    id       smallint PRIMARY KEY CHECK (id = 1),
    taken_ns bigint[] NOT NULL
);

-- +goose Down
DROP TABLE edit_window;
