// Wire shapes of the public REST API this page reads (see openapi.json).
export type JobStatus = "pending" | "running" | "succeeded" | "failed" | "cancelled";
export const JOB_STATUSES: readonly JobStatus[] = [
  "pending",
  "running",
  "succeeded",
  "failed",
  "cancelled",
];
export const FRAMEWORKS = ["pytorch", "tensorflow", "sklearn", "xgboost"] as const;

export interface StatusTransition {
  status: JobStatus;
  at: string;
  reason?: string | null;
  attempt?: number | null;
}

export interface TrainingJobSpec {
  name: string;
  framework: string;
  docker_image: string;
  entrypoint: string;
  data_path: string;
  output_path: string;
  hyperparameters?: Record<string, unknown>;
  tags?: Record<string, string>;
  compute?: Record<string, unknown>;
  max_retries?: number;
  max_runtime_seconds?: number | null;
  source?: string | null;
  env_vars?: Record<string, string>;
}

export interface TrainingJob {
  id: string;
  tenant_id: string;
  status: JobStatus;
  spec: TrainingJobSpec;
  created_at: string;
  created_by: string;
  started_at?: string | null;
  completed_at?: string | null;
  error_message?: string | null;
  metrics: Record<string, number>;
  pending_reason?: string | null;
  queue_position?: number | null;
  attempt?: number | null;
  resource_usage?: Record<string, number> | null;
  status_history: StatusTransition[];
}

export interface JobList {
  jobs: TrainingJob[];
  total: number;
  page: number;
  page_size: number;
  has_more: boolean;
}

export interface Model {
  id: string;
  name: string;
  framework: string;
  description: string;
  tags: Record<string, string>;
  aliases: Record<string, number>;
  latest_version?: number | null;
  created_at: string;
  updated_at: string;
}

export interface Lineage {
  job_id: string;
  job_name: string;
  data_path?: string | null;
  hyperparameters?: Record<string, unknown>;
  metrics?: Record<string, number>;
}

export interface InputFeature {
  name: string;
  dtype?: string;
}

export interface ModelVersion {
  id: string;
  model: string;
  version: number;
  framework: string;
  format: string;
  description: string;
  aliases: string[];
  size_bytes: number;
  sha256: string;
  created_at: string;
  created_by: string;
  lineage?: Lineage | null;
  signature?: { input_features: InputFeature[]; output_labels?: string[] } | null;
  source?: string;
}

export interface Deployment {
  id: string;
  name: string;
  model: string;
  version?: number | null;
  alias?: string | null;
  serving_version?: number | null;
  target_version?: number | null;
  status: "pending" | "loading" | "ready" | "failed";
  status_message: string;
  created_at: string;
  updated_at: string;
}

export interface Me {
  tenant_id: string;
  tenant_name: string;
  principal: string;
  auth_method: string;
}

// WebSocket messages of /v1/jobs/training/{id}/stream
export interface StreamStatus {
  type: "status";
  status: JobStatus;
  reason?: string | null;
  pending_reason?: string | null;
  queue_position?: number | null;
  attempt?: number | null;
}
export interface StreamLog {
  type: "log";
  id: number;
  timestamp: string;
  stream: string;
  line: string;
}
export interface StreamMetric {
  type: "metric";
  id: number;
  name: string;
  step?: number | null;
  value: number;
  timestamp: string;
}
export interface StreamEnd {
  type: "end";
  status: JobStatus;
  error_message?: string | null;
}
export type StreamMessage = StreamStatus | StreamLog | StreamMetric | StreamEnd;
