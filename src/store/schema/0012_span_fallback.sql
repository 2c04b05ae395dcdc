-- Inheritance across restarts (issue 15): which of a span's agent / session / task are fallbacks
-- a late ancestor span may still replace. Bits: 1 = the agent is only `service.name`, 2 = the
-- session is only the trace id, 4 = no task. Written with the span; cleared bit by bit when an
-- ancestor's value is applied (`store/fixups.rs`). NULL on spans stored before this migration
-- (never replaced).
ALTER TABLE spans ADD COLUMN fallback INTEGER;
