MODEL (name alpha.scaled, kind FULL);

SELECT n, @scaled(n) AS scaled FROM alpha.numbers
