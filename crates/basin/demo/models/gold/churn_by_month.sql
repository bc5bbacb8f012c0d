/* basin
materialized = "table"
owner = "growth"
description = "Customers at the start of each month, how many closed during it, and the churn rate."
*/
WITH months AS (
    SELECT DISTINCT CAST(date_trunc('month', invoice_date) AS DATE) AS month
    FROM silver.fact_invoice
),
counts AS (
    SELECT
        m.month,
        SUM(CASE WHEN c.created_on < m.month AND (c.closed_on IS NULL OR c.closed_on >= m.month)
                 THEN 1 ELSE 0 END) AS customers_at_start,
        SUM(CASE WHEN c.closed_on >= m.month AND c.closed_on < m.month + INTERVAL '1 month'
                 THEN 1 ELSE 0 END) AS churned
    FROM months m
    CROSS JOIN silver.dim_customer c
    WHERE c.is_current        -- dim_customer keeps history: one row per customer here
    GROUP BY m.month
)
SELECT
    month,
    customers_at_start,
    churned,
    CAST(CASE WHEN customers_at_start = 0 THEN 0
              ELSE CAST(churned AS DOUBLE) / customers_at_start END AS DECIMAL(9, 6)) AS churn_rate
FROM counts
