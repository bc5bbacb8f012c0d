/* basin
materialized = "incremental"
unique_key = "invoice_service_id"
incremental_from = "bronze_current.v3__invoice_service"
owner = "finance"
description = "One row per invoice x service: what each line cost on each invoice."
*/
SELECT
    s.invoice_service_id,
    s.invoice_id,
    i.invoice_date,
    s.service_id,
    CAST(s.amount AS DECIMAL(18, 4)) AS amount
FROM bronze_current.v3__invoice_service s
LEFT JOIN bronze_current.v3__invoice i ON i.invoice_id = s.invoice_id
