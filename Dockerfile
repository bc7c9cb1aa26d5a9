# The production image: the official Airflow image of the version pinned in requirements.txt,
# plus this project's requirements (docs: "Building the image", airflow.apache.org/docs/docker-stack).
ARG AIRFLOW_VERSION=3.3.2
FROM apache/airflow:${AIRFLOW_VERSION}-python3.11
# requirements.txt installs the local provider package (./providers/...) relative to its folder.
COPY requirements.txt /opt/audience-sync/requirements.txt
COPY providers /opt/audience-sync/providers
RUN cd /opt/audience-sync && pip install --no-cache-dir -r requirements.txt
