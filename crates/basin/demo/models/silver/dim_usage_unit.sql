/* basin
materialized = "table"
owner = "finance"
description = "Units usage is measured in."
*/
SELECT usage_unit_id, code AS unit, name AS unit_name FROM bronze_current.v3__usage_unit
