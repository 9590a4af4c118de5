"""What the generation stage says without the knowledge base, in each language it speaks.

A turn's language (:attr:`schemas.RetrievalResult.language`) picks the phrases; a language
without its own is answered with English's (:data:`schemas.DEFAULT_LANGUAGE`).  The Spanish
phrases were written by the voxbus engineer who added Spanish (issue 19 part 1), as a
contact centre in Spain would say them (formal *usted*).
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas import DEFAULT_LANGUAGE


@dataclass(frozen=True)
class Phrases:
    """The fixed texts of one language.

    Attributes:
        canned: replies that need no model, by intent (greeting, goodbye).
        fallback: said when the LLM gives nothing usable and no article answers.
        apology: said when the LLM server fails or is too slow.
        system_prompt: the LLM's system prompt, kept short on purpose (SmolLM2-135M parrots long
            instructions back to the caller).
    """

    canned: dict[str, str]
    fallback: str
    apology: str
    system_prompt: str


PHRASES: dict[str, Phrases] = {
    "en": Phrases(
        canned={"greeting": "Hello, this is Harbor Mobile. How can I help you today?",
                "goodbye": "Thank you for calling Harbor Mobile. Goodbye!"},
        fallback="Sorry, I don't have that information. I can connect you with a colleague who can help.",
        apology="Sorry, I'm having trouble answering right now. Please try again in a moment.",
        system_prompt="You are Harbor Mobile's phone assistant. Answer in one short sentence using the "
                      "facts.",
    ),
    "es": Phrases(
        canned={"greeting": "Hola, le atiende Harbor Mobile. ¿En qué puedo ayudarle?",
                "goodbye": "Gracias por llamar a Harbor Mobile. ¡Adiós!"},
        fallback="Lo siento, no tengo esa información. Puedo pasarle con un compañero que le ayude.",
        apology="Lo siento, ahora mismo no puedo responder. Inténtelo de nuevo en un momento.",
        system_prompt="Eres el asistente telefónico de Harbor Mobile. Responde en español, en una frase "
                      "corta, con los datos.",
    ),
}
"""The phrases of each language voxbus speaks."""


def phrases(language: str) -> Phrases:
    """The phrases of ``language``, else English's."""
    return PHRASES.get(language) or PHRASES[DEFAULT_LANGUAGE]
