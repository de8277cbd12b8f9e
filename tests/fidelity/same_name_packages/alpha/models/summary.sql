MODEL (name alpha.summary, kind VIEW);

SELECT SUM(s.scaled) AS total, STRING_AGG(t.label, ',' ORDER BY t.n) AS labels
FROM alpha.scaled AS s
JOIN alpha.tagged AS t ON t.n = s.n
