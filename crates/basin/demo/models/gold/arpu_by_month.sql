/* basin
materialized = "table"
owner = "finance"
description = "Average revenue per billed customer and month."

[[checks]]
type = "expression"
expression = "billed_customers > 0 AND arpu >= 0"
*/
SELECT
    CAST(date_trunc('month', invoice_date) AS DATE)                  AS month,
    COUNT(DISTINCT customer_id)                                      AS billed_customers,
    CAST(SUM(total_net) AS DECIMAL(18, 4))                           AS revenue,
    CAST(SUM(total_net) / COUNT(DISTINCT customer_id) AS DECIMAL(18, 4)) AS arpu
FROM silver.fact_invoice
GROUP BY CAST(date_trunc('month', invoice_date) AS DATE)
