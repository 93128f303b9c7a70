"""motte.power: ride out power cuts, shut hosts down in order, bring them back.

Layers, from the wire up:

- the NUT protocol core, sans-IO (:class:`NutConnection`, requests and replies as values,
  every ``ERR`` code a typed error) and a thin asyncio client (:class:`NutClient`);
- the UPS simulator (:class:`Simulator`, driven by a :class:`Scenario`);
- shutdown plans (:func:`load_plan`, :func:`check_plan`), pure;
- the coordinator (:class:`Coordinator`), a pure state machine fed readings and times, and
  its driver (:class:`Watch`) that polls the UPS, runs host steps and persists progress;
- secondary mode (:func:`run_secondary`) and the host agent (:class:`AgentApp`).
"""

from motte.power._agent import AgentApp, AgentClient, create_secret, load_secret, serve_agent
from motte.power._client import DEFAULT_PORT, NutClient, UpsAddress
from motte.power._connection import NEED_DATA, ConnectionClosed, NutConnection
from motte.power._coordinator import Coordinator
from motte.power._errors import (
    ERROR_CLASSES,
    AccessDeniedError,
    AgentError,
    DataStaleError,
    LocalProtocolError,
    NutConnectionError,
    NutServerError,
    PlanError,
    PowerError,
    RemoteProtocolError,
    ScenarioError,
    UnknownUpsError,
    server_error,
)
from motte.power._messages import (
    ErrorReply,
    Fsd,
    GetDesc,
    GetNumLogins,
    GetType,
    GetVar,
    InstCmd,
    ListClient,
    ListCmd,
    ListEnum,
    ListRange,
    ListReply,
    ListRw,
    ListUps,
    ListVar,
    Login,
    Logout,
    Master,
    NumLogins,
    Ok,
    Password,
    Primary,
    ProtVer,
    Reply,
    Request,
    SetVar,
    StartTls,
    Text,
    Username,
    VarDesc,
    VarType,
    VarValue,
    Ver,
)
from motte.power._plan import Host, Plan, Policy, UpsConfig, load_plan
from motte.power._plancheck import PlanCheck, TimelineEntry, check_plan, shutdown_stages
from motte.power._progress import HostState, Phase, Progress
from motte.power._scenario import Scenario, load_scenario
from motte.power._secondary import SecondaryCore, run_secondary
from motte.power._server_connection import BadRequest, NutServerConnection, parse_request
from motte.power._simulator import Simulator
from motte.power._status import NOTIFY_EVENTS, UpsReading, status_events
from motte.power._watch import Watch, default_log_path, load_state, state_path

__all__ = [
    "DEFAULT_PORT",
    "ERROR_CLASSES",
    "NEED_DATA",
    "NOTIFY_EVENTS",
    "AccessDeniedError",
    "AgentApp",
    "AgentClient",
    "AgentError",
    "BadRequest",
    "ConnectionClosed",
    "Coordinator",
    "DataStaleError",
    "ErrorReply",
    "Fsd",
    "GetDesc",
    "GetNumLogins",
    "GetType",
    "GetVar",
    "Host",
    "HostState",
    "InstCmd",
    "ListClient",
    "ListCmd",
    "ListEnum",
    "ListRange",
    "ListReply",
    "ListRw",
    "ListUps",
    "ListVar",
    "LocalProtocolError",
    "Login",
    "Logout",
    "Master",
    "NumLogins",
    "NutClient",
    "NutConnection",
    "NutConnectionError",
    "NutServerConnection",
    "NutServerError",
    "Ok",
    "Password",
    "Phase",
    "Plan",
    "PlanCheck",
    "PlanError",
    "Policy",
    "PowerError",
    "Primary",
    "Progress",
    "ProtVer",
    "RemoteProtocolError",
    "Reply",
    "Request",
    "Scenario",
    "ScenarioError",
    "SecondaryCore",
    "SetVar",
    "Simulator",
    "StartTls",
    "Text",
    "TimelineEntry",
    "UnknownUpsError",
    "UpsAddress",
    "UpsConfig",
    "UpsReading",
    "Username",
    "VarDesc",
    "VarType",
    "VarValue",
    "Ver",
    "Watch",
    "check_plan",
    "create_secret",
    "default_log_path",
    "load_plan",
    "load_scenario",
    "load_secret",
    "load_state",
    "parse_request",
    "run_secondary",
    "serve_agent",
    "server_error",
    "shutdown_stages",
    "state_path",
    "status_events",
]
