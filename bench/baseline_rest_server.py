"""The floor of the REST API's stack: FastAPI on uvicorn, the two benchmarked routes
answering a fixed user object (no auth, no state, no storage).

    python bench/baseline_rest_server.py --port 8766
"""

import argparse

import uvicorn
from fastapi import FastAPI, Request

app = FastAPI()


def user(user_id: str) -> dict:
    return {"userId": user_id, "loginTime": 1554204151774, "chatCustomer": False,
            "attributes": [{"attribute": "onlineStatus", "value": "offline"},
                           {"attribute": "call"}, {"attribute": "status", "value": "ready"}]}


@app.get("/v1/users/{user_id}")
async def get_user(user_id: str) -> dict:
    return user(user_id)


@app.put("/v1/users/{user_id}/attributes")
async def put_attributes(user_id: str, request: Request) -> dict:
    await request.json()
    return user(user_id)


@app.get("/healthz")
async def healthz() -> dict:
    return {"ok": True}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
