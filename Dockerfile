# chainplan service image: web (uvicorn: API + live dispatcher), dispatcher, worker and beat all run from it.
FROM node:22-slim AS frontend
WORKDIR /src/frontend
COPY frontend/ ./
RUN if [ -f package.json ]; then (npm ci --no-audit --no-fund && npm run build) ; else mkdir -p dist; fi

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    CHAINPLAN_VAR_DIR=/var/lib/chainplan
WORKDIR /app
COPY pyproject.toml README.md ./
COPY solvers/ solvers/
COPY planner_app/ planner_app/
COPY gpu_probe/ gpu_probe/
COPY serving/ serving/
COPY testbed/ testbed/
COPY examples/ examples/
COPY manage.py ./
RUN pip install . && useradd --system --create-home chainplan \
    && mkdir -p /var/lib/chainplan && chown chainplan /var/lib/chainplan /app/planner_app
COPY --from=frontend /src/frontend/dist/ frontend/dist/
RUN DJANGO_SECRET_KEY=build python manage.py collectstatic --noinput -v 0
USER chainplan
EXPOSE 8000
CMD ["uvicorn", "planner_app.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--workers", "3", "--no-access-log"]
