-- Argo CD health check for tpp.dev/TppClient (docs/gitops.md). Argo CD runs it with gopher-lua
-- (Lua 5.1) and a global `obj`; it returns {status = ..., message = ...}.
--
--   Suspended    spec.suspend is true, or the first signing key waits for a human's approval
--                (Ready=False, AwaitingKeyApproval, even while Reconciling=True): someone must
--                upload the JWKS at the bank's portal and approve the kid
--   Progressing  no status yet, status.observedGeneration behind metadata.generation, being
--                deleted, Reconciling=True, or Ready=False with a reason that only means "not
--                done yet" (Pending, KeyRotationInProgress, AuthorizationServerNotReady: the
--                AuthorizationServer's own health says why)
--   Degraded     Stalled=True, or Ready=False with any other reason: "<reason>: <message>"
--   Healthy      Ready=True
local hs = {}

local function condition(status, type)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local function describe(c)
  local text = c.reason or c.type
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

local progressing_reasons = { Pending = true, KeyRotationInProgress = true, AuthorizationServerNotReady = true }

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true: no calls to the authorization server; keys, certificate and tokens are kept"
  return hs
end

if obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "being deleted: deregistering at the authorization server"
  return hs
end

local status = obj.status
local ready = condition(status, "Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to reconcile"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local stalled = condition(status, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
  local key = condition(status, "SigningKeyReady")
  if key ~= nil and key.reason == "AwaitingKeyApproval" then
    hs.message = hs.message .. "; " .. describe(key)
  end
  return hs
end

if ready.reason == "AwaitingKeyApproval" or ready.reason == "Suspended" then
  hs.status = "Suspended"
  local key = condition(status, "SigningKeyReady")
  if key ~= nil and key.reason == "AwaitingKeyApproval" then
    hs.message = describe(key)
  else
    hs.message = describe(ready)
  end
  return hs
end

local reconciling = condition(status, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling)
  return hs
end

if ready.status == "Unknown" or progressing_reasons[ready.reason] then
  hs.status = "Progressing"
  hs.message = describe(ready)
  return hs
end

hs.status = "Degraded"
hs.message = describe(ready)
return hs
