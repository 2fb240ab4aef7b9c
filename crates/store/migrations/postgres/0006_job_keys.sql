-- The record or flow a job is about (the queue's ordering key). Claims skip a job whose key has
-- a running job or an older pending one, so two jobs of one key never run at once, in any
-- process, and they run in order. NULL: a job without a key, claimed as before.
ALTER TABLE jobs ADD COLUMN key text;
CREATE INDEX jobs_by_key ON jobs (key, run_at, id) WHERE state IN ('pending', 'running');
