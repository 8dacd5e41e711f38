-- What ran, for executions whose job id says nothing (ad-hoc runs: adhoc-<request id>).
ALTER TABLE executions ADD COLUMN title TEXT
