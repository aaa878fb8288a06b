-- Argo CD action "renew-certificate" of tpp.dev/TppClient: sets the verb annotation tpp.dev/renew-certificate
-- to the current UTC time; the operator acts on each new value once (docs/operations.md).
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["tpp.dev/renew-certificate"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
