-- Give a concurrency slot back (a call's end never came through its callback), waking the
-- pacer if it waits for one. KEYS[1] slots. ARGV[1] prefix, ARGV[2] holder.
free_slot(ARGV[1], KEYS[1], ARGV[2])
return 1
