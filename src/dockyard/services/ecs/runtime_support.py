"""What Dockyard's EC2 runtime (the agent's Docker translation) cannot honour yet.

Pure (no I/O, nothing from ``dockyard.agent``): the server's RunTask/CreateService
call ``unsupported()`` to refuse a task definition clearly, and the agent's
``docker_config.plan_task`` calls it again so a task that slipped through is
stopped with a reason instead of running differently from what was asked.

The rule: every field of a task or container definition (or of RunTask
overrides) that would change what the container does, and that
``agent/docker_config.py`` does not translate, is listed here with a sentence
saying so. Nothing is silently ignored. Fields that are only metadata or that
the agent's task engine handles itself (``essential``, ``dependsOn``,
``startTimeout``, ``stopTimeout``, ``portMappings[].name``/``appProtocol``,
``versionConsistency``, ``placementConstraints``, ``requiresCompatibilities``,
``runtimePlatform`` CPU architecture, ``executionRoleArn``) are not listed:
placement or the engine deals with them, or they change nothing on the host.
"""

from __future__ import annotations

from typing import Any

# Log drivers the agent passes straight to the Docker engine (built into Docker).
SUPPORTED_LOG_DRIVERS = ("json-file", "local", "none", "syslog", "journald", "gelf", "fluentd", "splunk")
NETWORK_MODES = ("bridge", "host", "none")


def unsupported(task_definition: dict[str, Any], overrides: dict[str, Any] | None = None) -> list[str]:
    """Each feature of ``task_definition`` (and RunTask ``overrides``) the runtime cannot honour, as a sentence.

    Empty when the task can run exactly as defined.
    """
    td = task_definition
    out: list[str] = []
    mode = td.get("networkMode") or "bridge"
    if mode not in NETWORK_MODES:
        out.append(f"networkMode {mode} is not supported yet (supported: bridge, host, none)")
    if td.get("proxyConfiguration"):
        out.append("proxyConfiguration (App Mesh proxy) is not supported yet")
    if td.get("inferenceAccelerators"):
        out.append("inferenceAccelerators are not supported")
    if td.get("taskRoleArn"):
        out.append("taskRoleArn is not supported yet: containers would get no task role credentials "
                   "(there is no credentials endpoint)")
    if td.get("enableFaultInjection"):
        out.append("enableFaultInjection is not supported yet")
    tec = td.get("trustedExecutionConfiguration") or {}
    if tec.get("isolationMode") not in (None, "SHARED"):
        out.append(f"trustedExecutionConfiguration isolationMode {tec['isolationMode']} is not supported")
    platform = td.get("runtimePlatform") or {}
    family = platform.get("operatingSystemFamily")
    if family not in (None, "LINUX"):
        out.append(f"runtimePlatform operatingSystemFamily {family} is not supported (Linux containers only)")

    for v in td.get("volumes") or []:
        name = v.get("name", "")
        for key, what in (("efsVolumeConfiguration", "EFS"),
                          ("fsxWindowsFileServerVolumeConfiguration", "FSx for Windows File Server"),
                          ("s3filesVolumeConfiguration", "S3 Files")):
            if v.get(key):
                out.append(f"volume '{name}': {key} ({what} volumes) is not supported yet")
        if v.get("configuredAtLaunch"):
            out.append(f"volume '{name}': configuredAtLaunch (EBS volumes) is not supported yet")

    for c in td.get("containerDefinitions") or []:
        out.extend(_container(c))

    if overrides:
        out.extend(_overrides(overrides))
    return out


def _container(c: dict[str, Any]) -> list[str]:
    name = c.get("name", "")
    p = f"container '{name}': "
    out: list[str] = []
    if c.get("repositoryCredentials"):
        out.append(p + "repositoryCredentials (private registry credentials from Secrets Manager) "
                       "are not supported yet")
    if c.get("secrets"):
        out.append(p + "secrets (from SSM Parameter Store or Secrets Manager) are not supported yet")
    if c.get("environmentFiles"):
        out.append(p + "environmentFiles (from S3) are not supported yet")
    if c.get("firelensConfiguration"):
        out.append(p + "firelensConfiguration is not supported yet")
    if c.get("credentialSpecs"):
        out.append(p + "credentialSpecs (gMSA) are not supported")
    for opt in c.get("dockerSecurityOptions") or []:
        if str(opt).startswith("credentialspec"):
            out.append(p + f"dockerSecurityOptions {opt} (Windows gMSA) is not supported")
    for rr in c.get("resourceRequirements") or []:
        out.append(p + f"resourceRequirements {rr.get('type')} is not supported yet")
    rp = c.get("restartPolicy") or {}
    if rp.get("enabled"):
        out.append(p + "restartPolicy (restarting a container inside its task) is not supported yet")
    log = c.get("logConfiguration")
    if log:
        driver = log.get("logDriver")
        if driver not in SUPPORTED_LOG_DRIVERS:
            out.append(p + f"logConfiguration logDriver {driver} is not supported yet "
                           f"(supported: {', '.join(SUPPORTED_LOG_DRIVERS)})")
        if log.get("secretOptions"):
            out.append(p + "logConfiguration secretOptions are not supported yet")
    return out


def _overrides(ov: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if ov.get("inferenceAcceleratorOverrides"):
        out.append("overrides: inferenceAcceleratorOverrides are not supported")
    if ov.get("taskRoleArn"):
        out.append("overrides: taskRoleArn is not supported yet: containers would get no task role credentials")
    for co in ov.get("containerOverrides") or []:
        p = f"overrides for container '{co.get('name', '')}': "
        if co.get("environmentFiles"):
            out.append(p + "environmentFiles (from S3) are not supported yet")
        for rr in co.get("resourceRequirements") or []:
            out.append(p + f"resourceRequirements {rr.get('type')} is not supported yet")
    return out
