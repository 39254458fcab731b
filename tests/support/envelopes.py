"""The error envelopes the API answers with (contract 2)."""


def error(message, code="BAD_REQUEST", name="BadRequestError"):
    return {"error": {"name": name, "code": code, "message": message}}


def invalid(message):
    return error(message, "VALIDATION_FAILURE", "ValidationException")


def not_found(thing):
    return error(f"{thing} not found", "NOT_FOUND", "NotFoundError")


UNSUPPORTED = error("Content-Type must be application/json", "UNSUPPORTED_MEDIA_TYPE", "UnsupportedMediaTypeError")
