MODEL (name beta.scaled, kind FULL);

SELECT n, @scaled(n) AS scaled FROM beta.numbers
