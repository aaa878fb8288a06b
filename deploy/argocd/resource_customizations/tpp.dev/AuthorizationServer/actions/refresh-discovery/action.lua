-- Argo CD action "refresh-discovery": sets tpp.dev/refresh-discovery to the current UTC time;
-- the operator drops its cached discovery document and fetches it again on each new value.
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["tpp.dev/refresh-discovery"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
