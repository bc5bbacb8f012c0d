/* basin
materialized = "table"
owner = "data-team"
description = "Mobile lines (SIMs), one row each, with their plan and fee."
[columns.msisdn]
tags = ["pii:phone"]
*/
SELECT
    service_id,
    customer_id,
    msisdn,
    plan_code,
    CAST(monthly_fee AS DECIMAL(18, 4))  AS monthly_fee,   -- money is DECIMAL(18,4) everywhere
    start_date,
    end_date,                                              -- NULL while the line is open
    CAST(flg_active AS BOOLEAN)                       AS is_active
FROM bronze_current.v3__service
