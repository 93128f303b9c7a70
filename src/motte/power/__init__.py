"""motte.power: ride out power cuts, shut hosts down in order, bring them back.

Layers, from the wire up:

- the NUT protocol (:mod:`motte.power.nut`): a sans-IO core for both sides and an asyncio
  client; import protocol names from there;
- the UPS simulator (:class:`Simulator`, driven by a :class:`Scenario`);
- shutdown plans (:func:`load_plan`, :func:`check_plan`, :func:`check_local`), pure but for
  the local files a plan names;
- the coordinator (:class:`Coordinator`), a pure state machine fed readings and times, and
  its driver (:class:`Watch`) that polls the UPSes, runs host steps and persists progress;
- secondary mode (:func:`run_secondary`) and the host agent (:class:`AgentApp`).
"""

from motte.power._agent import AgentApp, AgentClient, create_secret, load_secret, serve_agent
from motte.power._coordinator import Coordinator
from motte.power._errors import AgentError, PlanError, PowerError, ScenarioError
from motte.power._monitor import ups_runtime
from motte.power._notify import EventLog, Notifier, read_events
from motte.power._plan import Host, Plan, Policy, Supply, UpsConfig, load_plan
from motte.power._plancheck import Loss, PlanCheck, check_local, check_plan, shutdown_stages
from motte.power._progress import PLAN_EVENTS, HostState, Phase, Progress
from motte.power._scenario import Scenario, load_scenario
from motte.power._secondary import SecondaryCore, run_secondary
from motte.power._simulator import Simulator
from motte.power._status import NOTIFY_EVENTS, UpsReading, status_events
from motte.power._watch import Watch, default_log_path, load_state, power_dir, state_path

__all__ = [
    "NOTIFY_EVENTS",
    "PLAN_EVENTS",
    "AgentApp",
    "AgentClient",
    "AgentError",
    "Coordinator",
    "EventLog",
    "Host",
    "HostState",
    "Loss",
    "Notifier",
    "Phase",
    "Plan",
    "PlanCheck",
    "PlanError",
    "Policy",
    "PowerError",
    "Progress",
    "Scenario",
    "ScenarioError",
    "SecondaryCore",
    "Simulator",
    "Supply",
    "UpsConfig",
    "UpsReading",
    "Watch",
    "check_local",
    "check_plan",
    "create_secret",
    "default_log_path",
    "load_plan",
    "load_scenario",
    "load_secret",
    "load_state",
    "power_dir",
    "read_events",
    "run_secondary",
    "serve_agent",
    "shutdown_stages",
    "state_path",
    "status_events",
    "ups_runtime",
]
