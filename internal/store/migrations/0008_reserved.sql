-- 0008: reserved. Issue 16's helpers were given migration numbers; this
-- branch (h-attest) uses 0010 only. This empty file keeps the numbers
-- without gaps on the branch; the merge replaces it with the real 0008.
SELECT 1;
