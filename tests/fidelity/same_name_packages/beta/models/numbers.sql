MODEL (name beta.numbers, kind FULL);

SELECT range AS n FROM range(1, 6)
