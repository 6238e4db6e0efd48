"""Lambda apps written with existing frameworks, unchanged: Powertools and Mangum + FastAPI."""

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from fastapi import FastAPI
from mangum import Mangum

powertools_app = APIGatewayHttpResolver()


@powertools_app.get("/todos/<todo_id>")
def get_todo(todo_id: str):
    return {"id": todo_id, "query": powertools_app.current_event.get_query_string_value("q", "")}


@powertools_app.post("/todos")
def create_todo():
    return {"created": powertools_app.current_event.json_body}, 201


def powertools_handler(event, context):
    return powertools_app.resolve(event, context)


fastapi_app = FastAPI()


@fastapi_app.get("/items/{item_id}")
def read_item(item_id: int, q: str | None = None):
    return {"item_id": item_id, "q": q}


@fastapi_app.post("/items")
async def create_item(item: dict):
    return {"received": item}


mangum_handler = Mangum(fastapi_app, lifespan="off")
