MODEL (
  name silver.daily_totals,
  kind INCREMENTAL_BY_TIME_RANGE (
    time_column sale_date
  ),
  grain sale_date
);

SELECT
  sale_date,
  SUM(amount) AS revenue
FROM bronze.sales
WHERE
  sale_date BETWEEN @start_ds AND @end_ds
GROUP BY sale_date
