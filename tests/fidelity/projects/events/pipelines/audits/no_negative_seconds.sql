AUDIT (
  name no_negative_seconds,
  blocking false,
);

SELECT *
FROM @this_model
WHERE
  seconds < 0
