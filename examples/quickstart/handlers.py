"""Lambda handlers for the quickstart: plain AWS Lambda Python handlers, unchanged."""

import json


def hello(event, context):
    """Payload format 2.0: returning a dict without statusCode lets the gateway infer a 200 JSON response."""
    name = (event.get("queryStringParameters") or {}).get("name", "world")
    return {"message": f"hello, {name}", "requestId": context.aws_request_id}


PETS = {"1": {"id": 1, "name": "Rex", "type": "dog"}, "2": {"id": 2, "name": "Tom", "type": "cat"}}


def pets(event, context):
    """Payload format 1.0: the classic statusCode/headers/body response."""
    pet = PETS.get(event["pathParameters"]["petId"])
    if pet is None:
        return {"statusCode": 404, "body": json.dumps({"message": "no such pet"})}
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(pet)}
