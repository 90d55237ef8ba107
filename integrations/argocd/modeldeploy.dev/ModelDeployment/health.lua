-- Argo CD health check for modeldeploy.dev/ModelDeployment.
-- Available -> Healthy; Pending/Progressing/Validating -> Progressing;
-- RolledBack/Degraded/Failed -> Degraded. A status the operator computed for an older
-- generation is still Progressing: the new spec has not been acted on yet.
local hs = {}
if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the modeldeploy operator to report status"
  return hs
end
local generation = obj.metadata and obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end
local health = {
  Available = "Healthy",
  Pending = "Progressing",
  Progressing = "Progressing",
  Validating = "Progressing",
  RolledBack = "Degraded",
  Degraded = "Degraded",
  Failed = "Degraded",
}
local phase = obj.status.phase
hs.status = health[phase] or "Unknown"
local message = obj.status.message
if message == nil or message == "" then
  message = "phase " .. phase
end
hs.message = message
return hs
