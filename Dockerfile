# The production image: the official Airflow image of the version pinned in requirements.txt,
# plus this project's requirements (docs: "Building the image", airflow.apache.org/docs/docker-stack).
ARG AIRFLOW_VERSION=3.3.2
FROM apache/airflow:${AIRFLOW_VERSION}-python3.11
COPY requirements.txt /requirements.txt
RUN pip install --no-cache-dir -r /requirements.txt
