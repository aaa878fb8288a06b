-- Argo CD action "renew-tokens" of tpp.dev/TppClient: sets the verb annotation tpp.dev/renew-tokens
-- to the current UTC time; the operator acts on each new value once (docs/operations.md).
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["tpp.dev/renew-tokens"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
