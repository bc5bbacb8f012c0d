/* basin
materialized = "table"
owner = "growth"
description = "Of the customers first billed in a month (their cohort), how many are still billed N months later."
*/
WITH billed AS (
    SELECT DISTINCT customer_id, CAST(date_trunc('month', invoice_date) AS DATE) AS month
    FROM silver.fact_invoice
),
cohorts AS (
    SELECT customer_id, MIN(month) AS cohort FROM billed GROUP BY customer_id
),
sizes AS (
    SELECT cohort, COUNT(*) AS cohort_size FROM cohorts GROUP BY cohort
),
aged AS (
    SELECT
        c.cohort,
        b.customer_id,
        CAST((date_part('year', b.month) - date_part('year', c.cohort)) * 12
             + date_part('month', b.month) - date_part('month', c.cohort) AS INT) AS months_since
    FROM billed b
    JOIN cohorts c ON c.customer_id = b.customer_id
),
retained AS (
    SELECT cohort, months_since, COUNT(*) AS customers FROM aged GROUP BY cohort, months_since
)
SELECT
    r.cohort,
    r.months_since,
    s.cohort_size,
    r.customers,
    CAST(CAST(r.customers AS DOUBLE) / s.cohort_size AS DECIMAL(9, 6)) AS retention
FROM retained r
JOIN sizes s ON s.cohort = r.cohort
