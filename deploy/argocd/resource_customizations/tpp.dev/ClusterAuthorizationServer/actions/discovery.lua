-- Argo CD resource actions of tpp.dev/AuthorizationServer and ClusterAuthorizationServer
-- (docs/gitops.md): refresh-discovery makes the operator fetch the discovery document again
-- now instead of serving it from its cache (for example after the bank changed an endpoint).
local actions = {}
actions["refresh-discovery"] = { ["disabled"] = false, ["iconClass"] = "fa fa-fw fa-sync", ["displayName"] = "Refresh discovery" }
return actions
