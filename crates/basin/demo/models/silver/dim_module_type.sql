/* basin
materialized = "table"
owner = "finance"
description = "Product modules charge types belong to."
*/
SELECT module_type_id, name AS module FROM bronze_current.v3__module_type
