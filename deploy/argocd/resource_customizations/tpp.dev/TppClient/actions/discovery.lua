-- Argo CD resource actions of tpp.dev/TppClient (docs/gitops.md): each sets one of the
-- operator's verb annotations to the current time (each new value is acted on once). Disabled
-- while spec.suspend is true (the operator makes no call to the authorization server then);
-- renew-certificate is disabled for a certificate from a Secret (its issuer renews it).
local actions = {}
local suspended = obj.spec ~= nil and obj.spec.suspend == true
local from_secret = obj.spec ~= nil and obj.spec.transportCertificate ~= nil
  and obj.spec.transportCertificate.source == "SecretRef"
actions["renew-tokens"] = { ["disabled"] = suspended, ["iconClass"] = "fa fa-fw fa-sync", ["displayName"] = "Renew tokens" }
actions["rotate-keys"] = { ["disabled"] = suspended, ["iconClass"] = "fa fa-fw fa-key", ["displayName"] = "Rotate signing keys" }
actions["renew-certificate"] = { ["disabled"] = suspended or from_secret, ["iconClass"] = "fa fa-fw fa-certificate", ["displayName"] = "Renew transport certificate" }
return actions
