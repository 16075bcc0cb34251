"""Storage: the SQLAlchemy schema, engines, Alembic migrations and the repository."""

from lpzero_queue.storage._engine import check_connection, make_engine, transaction
from lpzero_queue.storage._migrate import (
    alembic_config,
    current_revision,
    downgrade,
    head_revision,
    migrations_dir,
    upgrade,
)
from lpzero_queue.storage._models import (
    Architecture,
    Base,
    Benchmark,
    Correlation,
    Evaluation,
    GroundTruth,
    Individual,
    InputBatch,
    Proxy,
    SearchRun,
    TrainingJob,
    WorkUnitRow,
)
from lpzero_queue.storage._upsert import insert_ignore
from lpzero_queue.storage.queue import Heartbeat, LeasedQueue, LeaseState
from lpzero_queue.storage.status import (
    EvaluationStatus,
    IndividualStatus,
    JobStatus,
    RunStatus,
    UnitKind,
    UnitStatus,
)
from lpzero_queue.storage.training_jobs import (
    JobRequest,
    JobResult,
    TrainingJobQueue,
)
from lpzero_queue.storage.work_units import UnitOutcome, WorkUnitQueue

__all__ = [
    "Architecture",
    "Base",
    "Benchmark",
    "Correlation",
    "Evaluation",
    "EvaluationStatus",
    "GroundTruth",
    "Heartbeat",
    "Individual",
    "IndividualStatus",
    "InputBatch",
    "JobRequest",
    "JobResult",
    "JobStatus",
    "LeaseState",
    "LeasedQueue",
    "Proxy",
    "RunStatus",
    "SearchRun",
    "TrainingJob",
    "TrainingJobQueue",
    "UnitKind",
    "UnitOutcome",
    "UnitStatus",
    "WorkUnitQueue",
    "WorkUnitRow",
    "alembic_config",
    "check_connection",
    "current_revision",
    "downgrade",
    "head_revision",
    "insert_ignore",
    "make_engine",
    "migrations_dir",
    "transaction",
    "upgrade",
]
