-- Argo CD health check for tpp.dev/AuthorizationServer and tpp.dev/ClusterAuthorizationServer
-- (the two files are identical; docs/gitops.md). Argo CD runs it with gopher-lua (Lua 5.1) and
-- a global `obj`; it returns {status = ..., message = ...}.
--
--   Progressing  no status yet, status.observedGeneration behind metadata.generation,
--                Reconciling=True, or Ready=Unknown
--   Degraded     Stalled=True, or Ready=False (discovery failed, issuer mismatch, preflight
--                findings...): "<reason>: <message>"
--   Healthy      Ready=True: discovery succeeded and the FAPI 2.0 preflight found nothing missing
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

local status = obj.status
local ready = condition(status, "Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to fetch the discovery document"
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
  return hs
end

local reconciling = condition(status, "Reconciling")
if ready.status == "Unknown" or (reconciling ~= nil and reconciling.status == "True") then
  hs.status = "Progressing"
  hs.message = describe(reconciling or ready)
  return hs
end

hs.status = "Degraded"
hs.message = describe(ready)
return hs
