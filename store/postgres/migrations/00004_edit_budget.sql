-- linkbot's PostgreSQL schema, version 4: the workspace's chat.update
-- budget, shared by every replica (issue 11). Slack counts chat.update
-- and chat.delete per workspace (Tier 3, about 50 a minute), not per
-- process: each replica's own budget would let three replicas spend three
-- times what Slack allows.
--
-- Expand only: one table, which nothing of versions 2 and 3 reads or writes; a
-- replica that knows only version 3 goes on running beside it (it keeps
-- to its own budget alone, as before).

-- +goose Up

-- Edits taken per minute (a Unix minute on the database's clock); each
-- take deletes the minutes that are over.
CREATE TABLE edit_budget (
    minute bigint PRIMARY KEY,
    used   integer NOT NULL CHECK (used >= 0)
);

-- +goose Down
DROP TABLE edit_budget;
