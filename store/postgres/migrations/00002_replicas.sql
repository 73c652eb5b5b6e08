-- linkbot's PostgreSQL schema, version 2: what several replicas on one
-- database need besides the limits (issue 11).
--
-- Expand only: it adds two tables and changes nothing version 1 reads or
-- writes, so a linkbot that knows only version 1 goes on running beside
-- one that ran this (a rolling deploy); it simply neither deduplicates
-- commands nor takes part in the ticker's election.
--
-- A third mechanism needs no schema: a claimed Slack edit is kept in the
-- pairing's document (doc->'view_claims', a key pairing.Pairing does not
-- have, so every write keeps it, as it keeps any key it does not know),
-- and what each surface shows in the pairing's own keys (last_view for the
-- ephemeral message; dm and card, with their last_view, for the others).

-- +goose Up

-- Slack commands already handled: an envelope ID, or a click's own
-- identity. A key is a duplicate until until_ns (the caller's clock, as
-- the limits' windows); Prune deletes it after.
CREATE TABLE dedupe_keys (
    key      text PRIMARY KEY,
    until_ns bigint NOT NULL
);
CREATE INDEX dedupe_keys_until ON dedupe_keys (until_ns);

-- The ticker's leader: at most one row. A replica is elected by inserting
-- it (when there is none, or the one there expired), and renews its term
-- — (leader_id, elected_ns) — every tick. Times are on the DATABASE's
-- clock, so replicas whose clocks disagree still agree on when a lease
-- has run out (riverqueue/river's river_leader is the model; logged, not
-- UNLOGGED as river's, so a crash of the server does not hand the lease to
-- a second replica while the first still trusts it).
CREATE TABLE leader_lease (
    name       text PRIMARY KEY DEFAULT 'ticker' CHECK (name = 'ticker'),
    leader_id  text NOT NULL CHECK (char_length(leader_id) BETWEEN 1 AND 200),
    elected_ns bigint NOT NULL,
    expires_ns bigint NOT NULL
);

-- +goose Down
DROP TABLE leader_lease;
DROP TABLE dedupe_keys;
