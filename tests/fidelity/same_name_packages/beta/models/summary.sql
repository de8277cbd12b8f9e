MODEL (name beta.summary, kind VIEW);

SELECT SUM(s.scaled) AS total, STRING_AGG(t.label, ',' ORDER BY t.n) AS labels
FROM beta.scaled AS s
JOIN beta.tagged AS t ON t.n = s.n
