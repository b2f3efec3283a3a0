"""A version's card and source as signed at registration, checked against its registry row.

What a row's `card` and `source` columns say decides code: the feature function and the
estimator a retrain imports, the source it reads, the schema serving coerces with. Those
columns are writable by anyone who can write the database; the signed `card` artifact
(domain/registry/card_document.py) is not. Readers get the signed copy, and a row that says anything
else is refused, naming the first field that differs.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from pgmlops.domain.registry.card import ModelCard
from pgmlops.domain.registry.card_document import (
    CARD_ROLE,
    card_document,
    first_difference,
    read_card_document,
)
from pgmlops.domain.registry.records import ModelVersion, StoredFile
from pgmlops.errors import ArtifactError
from pgmlops.store.artifacts import ArtifactStore

log = logging.getLogger(__name__)


def card_bytes(card: ModelCard, source: dict[str, Any] | None) -> bytes:
    """The document signed as a version's `card` artifact."""
    return card_document(card.model_dump(mode="json"), source)


def store_card(
    artifacts: ArtifactStore, card: ModelCard, source: dict[str, Any] | None
) -> StoredFile:
    """Write a version's card document into the store (signed with the version's files)."""
    return artifacts.put(card_bytes(card, source))


def verified_version(artifacts: ArtifactStore, version: ModelVersion) -> ModelVersion:
    """The version with its card and source from the signed copy; ArtifactError if they differ."""
    what = f"{version.model_name} v{version.version}"
    if CARD_ROLE not in version.files:
        if artifacts.trust_unsigned:
            log.warning(
                "using %s's card and source from its row because trust_unsigned is set", what
            )
            return version
        raise ArtifactError(
            f"{what} has no signed card (registered before cards were signed, or its row was "
            "changed); refusing to use its card and source: check the version, then run "
            f"`pgmlops artifacts sign --model-name {version.model_name} --version "
            f"{version.version}` to see what to confirm"
        )
    data = artifacts.read(version, CARD_ROLE)
    try:
        card_data, source = read_card_document(data)
        signed = ModelCard.model_validate(card_data)
    except (ValueError, PydanticValidationError) as exc:
        # Signed bytes that are not a card: only a key holder could have made them.
        raise ArtifactError(f"the card artifact of {what} is not a card document: {exc}") from None
    differs = first_difference(
        signed.model_dump(mode="json"), version.card.model_dump(mode="json"), "card"
    ) or first_difference(source, version.source, "source")
    if differs:
        raise ArtifactError(
            f"{what}'s registry row differs from its signed card at {differs}; refusing to use "
            "it (the row was changed after registration: restore it from a backup)"
        )
    return replace(version, card=signed, source=source)
