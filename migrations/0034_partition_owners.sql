-- Engine workers on NATS JetStream (ingest/worker.py): each of P ping partitions is owned
-- by one worker at a time, through a lease in a NATS key-value bucket. A lease can expire
-- under a worker that is only slow (a long pause), not dead; the fence is here: a worker
-- that claims a partition takes the next epoch, and every batch commit of a partition
-- first reads its row (FOR SHARE) and is refused unless the epoch is still its own. The
-- claim's UPDATE waits for a commit in flight, so the new owner's recovery sees it, and
-- nothing the old owner commits after that is accepted.
CREATE TABLE partition_owners (
    partitions  integer NOT NULL,            -- P: the partitioning this row belongs to
    partition   integer NOT NULL,
    owner       text NOT NULL,               -- the worker's id
    epoch       bigint NOT NULL,             -- fencing token, +1 per claim
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partitions, partition)
);
