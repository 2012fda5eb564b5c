# A cluster, a task definition and a service that Terraform waits on until it is steady
# (wait_for_steady_state), applied by Terraform's AWS provider against a live Dockyard
# server with fake-runtime agents (tests/e2e/test_terraform_services.py fills the variables).
# Changing var.greeting makes a new task definition revision, and so a rolling deployment.

terraform {
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

variable "endpoint" { type = string }
variable "access_key" { type = string }
variable "secret_key" { type = string }
variable "name" { type = string }
variable "greeting" {
  type    = string
  default = "hello"
}

provider "aws" {
  region     = "us-east-1"
  access_key = var.access_key
  secret_key = var.secret_key

  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  skip_region_validation      = true

  endpoints {
    ecs = var.endpoint
  }
}

resource "aws_ecs_cluster" "main" {
  name = var.name
}

resource "aws_ecs_task_definition" "web" {
  family                   = "${var.name}-web"
  network_mode             = "bridge"
  requires_compatibilities = ["EC2"]

  # The agents run a fake runtime: nothing is pulled, nothing listens.
  container_definitions = jsonencode([
    {
      name         = "web"
      image        = "127.0.0.1:5000/busybox:latest"
      essential    = true
      memory       = 64
      cpu          = 128
      command      = ["httpd", "-f", "-p", "8080"]
      portMappings = [{ containerPort = 8080, hostPort = 0, protocol = "tcp" }]
      environment  = [{ name = "GREETING", value = var.greeting }]
    }
  ])
}

resource "aws_ecs_service" "web" {
  name            = "web"
  cluster         = aws_ecs_cluster.main.id
  task_definition = aws_ecs_task_definition.web.arn
  desired_count   = 2
  launch_type     = "EC2"

  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  # Create and update return only once the service has one deployment and
  # runningCount == desiredCount (the provider's statusServiceWaitForStable).
  wait_for_steady_state = true

  # Fail fast instead of the provider's 20-minute default.
  timeouts {
    create = "2m"
    update = "2m"
    delete = "2m"
  }
}

output "cluster_arn" { value = aws_ecs_cluster.main.arn }
output "task_definition_arn" { value = aws_ecs_task_definition.web.arn }
output "service_arn" { value = aws_ecs_service.web.id }
