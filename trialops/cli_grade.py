"""``trialops grade``: grade CRS or ICANS by the ASTCT consensus (Lee et al., BBMT 2019).

Each command prints one JSON object on stdout: scale, grade, determined_by and the
observation it was computed from. Bad arguments exit 2 with a message naming the option.
"""

from __future__ import annotations

import enum
import json
from typing import TYPE_CHECKING, Annotated, Any, get_args

import typer
from pydantic import BaseModel, ValidationError

from services.safety.grading import (
    Consciousness,
    CrsObservation,
    Grade,
    Hypotension,
    Hypoxia,
    IcansObservation,
    Icp,
    Motor,
    Seizure,
    grade_crs,
    grade_icans,
)

app = typer.Typer(
    help="ASTCT consensus grading of CRS and ICANS (Lee et al., BBMT 2019).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _choices(name: str, literal: Any) -> type[enum.StrEnum]:
    """A str enum of a Literal's values, so typer lists and checks the same choices as the model."""
    # The functional API returns a new enum class; mypy types the call as a member lookup.
    return enum.StrEnum(name, [(v, v) for v in get_args(literal)])  # type: ignore[return-value]


if TYPE_CHECKING:
    # Members made at run time are unknown to mypy: to it, each choice is some str enum.
    HypotensionChoice = enum.StrEnum
    HypoxiaChoice = enum.StrEnum
    ConsciousnessChoice = enum.StrEnum
    SeizureChoice = enum.StrEnum
    MotorChoice = enum.StrEnum
    IcpChoice = enum.StrEnum
else:
    HypotensionChoice = _choices("HypotensionChoice", Hypotension)
    HypoxiaChoice = _choices("HypoxiaChoice", Hypoxia)
    ConsciousnessChoice = _choices("ConsciousnessChoice", Consciousness)
    SeizureChoice = _choices("SeizureChoice", Seizure)
    MotorChoice = _choices("MotorChoice", Motor)
    IcpChoice = _choices("IcpChoice", Icp)

_OPTION_OF_FIELD = {
    "temperature_c": "--temperature",
    "fever_masked": "--fever-masked",
    "hypotension": "--hypotension",
    "hypoxia": "--hypoxia",
    "ice_score": "--ice-score",
    "consciousness": "--consciousness",
    "seizure": "--seizure",
    "motor": "--motor",
    "icp": "--icp",
    "death": "--death",
}


def _observe(model: type[BaseModel], **fields: Any) -> Any:
    """Build the observation; a value the model refuses is reported against its option."""
    try:
        return model(**fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        raise typer.BadParameter(
            f"{fields.get(field)!r}: {error['msg']}",
            param_hint=f"'{_OPTION_OF_FIELD.get(field, field)}'",
        ) from None


def _emit(grade: Grade, observation: BaseModel) -> None:
    document = {**grade.model_dump(mode="json"), "observation": observation.model_dump(mode="json")}
    typer.echo(json.dumps(document))


@app.command("crs")
def crs(
    temperature: Annotated[
        float, typer.Option("--temperature", help="Highest temperature in Celsius (25-45).")
    ],
    hypotension: Annotated[
        HypotensionChoice,
        typer.Option(
            "--hypotension",
            help="one-vasopressor is with or without vasopressin; "
            "multiple-vasopressors excludes vasopressin.",
        ),
    ],
    hypoxia: Annotated[
        HypoxiaChoice,
        typer.Option(
            "--hypoxia",
            help="low-flow <= 6 L/min or blow-by; high-flow > 6 L/min, facemask, "
            "non-rebreather or Venturi; positive-pressure CPAP, BiPAP or ventilation.",
        ),
    ],
    fever_masked: Annotated[
        bool,
        typer.Option(
            "--fever-masked",
            help="Antipyretic or anti-cytokine therapy given after CRS began.",
        ),
    ] = False,
    death: Annotated[bool, typer.Option("--death", help="Death due to CRS.")] = False,
) -> None:
    """Grade cytokine release syndrome; without fever (unless masked) there is no CRS."""
    observation = _observe(
        CrsObservation,
        temperature_c=temperature,
        fever_masked=fever_masked,
        hypotension=hypotension.value,
        hypoxia=hypoxia.value,
        death=death,
    )
    _emit(grade_crs(observation), observation)


@app.command("icans")
def icans(
    ice_score: Annotated[
        int, typer.Option("--ice-score", help="Immune effector Cell Encephalopathy score, 0-10.")
    ],
    consciousness: Annotated[
        ConsciousnessChoice,
        typer.Option("--consciousness", help="Awakens spontaneously, to voice, only to touch."),
    ],
    seizure: Annotated[
        SeizureChoice,
        typer.Option("--seizure", help="resolving rapidly, or prolonged (> 5 min) / repeated."),
    ],
    motor: Annotated[MotorChoice, typer.Option("--motor", help="Deep focal motor weakness.")],
    icp: Annotated[
        IcpChoice, typer.Option("--icp", help="Raised intracranial pressure: focal or diffuse.")
    ],
    death: Annotated[bool, typer.Option("--death", help="Death due to ICANS.")] = False,
) -> None:
    """Grade immune effector cell-associated neurotoxicity (adults): the worst domain."""
    observation = _observe(
        IcansObservation,
        ice_score=ice_score,
        consciousness=consciousness.value,
        seizure=seizure.value,
        motor=motor.value,
        icp=icp.value,
        death=death,
    )
    _emit(grade_icans(observation), observation)
