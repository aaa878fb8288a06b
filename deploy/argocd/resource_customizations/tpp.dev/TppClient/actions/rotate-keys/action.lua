-- Argo CD action "rotate-keys" of tpp.dev/TppClient: sets the verb annotation tpp.dev/rotate-keys
-- to the current UTC time; the operator acts on each new value once (docs/operations.md).
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["tpp.dev/rotate-keys"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
