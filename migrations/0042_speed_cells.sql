-- Learned travel speeds for ETAs (compliance/history.py, store/speeds.py): what the fleet
-- actually drove, per ~220 m cell (floor(lat / 0.002), floor(lon / 0.002)) and hour of
-- week (UTC, 0 = Monday 00:00). Each row holds a decayed sum of moving speeds and its
-- decayed weight (each sample weighs 0.5^((decayed_to - its ts) / half-life)), so a
-- refresh adds only the new pings and ages the old ones once a day, without reading the
-- whole history again (half-life ROUTEWATCH_SPEEDS_HALF_LIFE_DAYS).
CREATE TABLE IF NOT EXISTS speed_cells (
    cell_i        integer NOT NULL,
    cell_j        integer NOT NULL,
    hour_of_week  smallint NOT NULL CHECK (hour_of_week BETWEEN 0 AND 167),
    weight        double precision NOT NULL,   -- decayed number of moving samples
    sum_mps       double precision NOT NULL,   -- decayed sum of their speeds, m/s
    PRIMARY KEY (cell_i, cell_j, hour_of_week)
);

-- One row: the pings before learned_until are in speed_cells, weighed as of decayed_to.
-- Learners lock it (FOR UPDATE), so several engine processes learn each interval once
-- between them.
CREATE TABLE IF NOT EXISTS speed_learning (
    id             boolean PRIMARY KEY DEFAULT true CHECK (id),
    learned_until  timestamptz NOT NULL,
    decayed_to     timestamptz NOT NULL,
    learned_at     timestamptz NOT NULL DEFAULT now(),
    cells          bigint NOT NULL DEFAULT 0     -- (cell, hour) rows the last run touched
);
