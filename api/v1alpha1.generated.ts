// Generated from crds/*.yaml by api/generate-types.ts: do not edit, run `make generate`.
import type { V1ObjectMeta, V1PodTemplateSpec } from "@kubernetes/client-node";
import type { Condition } from "./condition.ts";

/** Who may reach which Connections of this namespace, with which actions, for how long and under which conditions (approval, rules, masking). */
export interface AccessPolicy {
  apiVersion?: "langgraph-jit.dev/v1alpha1";
  kind?: "AccessPolicy";
  metadata?: V1ObjectMeta;
  spec: AccessPolicySpec;
  status?: AccessPolicyStatus;
}

export type AccessPolicySpec = {
  /** Requesters this policy applies to, in the shape of RBAC subjects. */
  subjects: Array<{
    /** User, Group or ServiceAccount. */
    kind: "User" | "Group" | "ServiceAccount";
    name: string;
    /** Namespace of a ServiceAccount subject; defaults to the policy's. */
    namespace?: string;
  }>;
  /** Longest run this policy authorizes, as a duration such as 30m or 2h. */
  maxDuration: string;
  /** The ServiceAccount of this namespace that runs granted by this policy run as; default: langgraph-jit-run, which the operator makes and binds to nothing. The pod never holds a token of it either way. */
  runServiceAccountName?: string;
  /** Human approval before the run starts: it waits in AwaitingApproval, with no Job and no credential, until enough approvers approve (one Deny ends it). */
  runApproval?: {
    /** Who may decide; never the run's own requester. */
    approvers: Array<{
      /** User, Group or ServiceAccount. */
      kind: "User" | "Group" | "ServiceAccount";
      name: string;
      /** Namespace of a ServiceAccount subject; defaults to the policy's. */
      namespace?: string;
    }>;
    /** Distinct approvers who must approve. */
    approvals: number;
    /** How long the run waits for a decision before it is Denied (ApprovalExpired). */
    timeout: string;
  };
  /** Who hears that something waits for this policy's approvers, and how it was decided: an HTTPS webhook taking Slack-compatible JSON. Best effort: retried with backoff, it never delays or changes a decision. */
  notify?: {
    webhook: {
      /** A Secret of this namespace whose key url holds the https:// URL (a Slack incoming webhook, for one) and whose optional key ca.crt holds the PEM CAs to trust instead of the system's. */
      secretRef: {
        name: string;
      };
    };
  };
  /** One grant per Connection. */
  grants: Array<{
    /** Name of a Connection in this namespace. */
    connection: string;
    /** postgres: read, write, ddl, admin. http: read (GET, HEAD, OPTIONS) and write (POST, PUT, PATCH, DELETE). */
    actions: Array<"read" | "write" | "ddl" | "admin">;
    /** Holds each command of the listed actions for a human decision. */
    approval?: {
      /** postgres: read, write, ddl, admin. http: read (GET, HEAD, OPTIONS) and write (POST, PUT, PATCH, DELETE). */
      actions: Array<"read" | "write" | "ddl" | "admin">;
      approvers: Array<{
        /** User, Group or ServiceAccount. */
        kind: "User" | "Group" | "ServiceAccount";
        name: string;
        /** Namespace of a ServiceAccount subject; defaults to the policy's. */
        namespace?: string;
      }>;
      /** Distinct approvers who must approve each held command. */
      approvals: number;
      /** How long a held command waits before it is denied. */
      timeout: string;
    };
    /** Request rules for an HTTP connection; a request must match one. */
    http?: {
      rules: Array<{
        methods: Array<"GET" | "HEAD" | "OPTIONS" | "POST" | "PUT" | "PATCH" | "DELETE">;
        /** Path globs; * matches one segment, ** any number. */
        paths: Array<string>;
      }>;
    };
    /** What the sidecar masks in responses. */
    masking?: {
      /** Result columns masked entirely (postgres). */
      columns?: Array<string>;
      /** JSONPath expressions of response fields masked entirely (http). */
      jsonPaths?: Array<string>;
      /** Patterns masked wherever they appear. */
      detectors?: Array<"email" | "credit-card" | "us-ssn" | "phone" | "iban" | "jwt" | "private-key" | "aws-access-key">;
      /** A response whose headers say it cannot be masked (no or two Content-Types, a type or charset the sidecar does not read, an unknown encoding): Deny withholds it, Pass forwards it unmasked; the session event records either. A body that breaks while being masked is withheld either way. */
      unmaskable: "Deny" | "Pass";
    };
  }>;
};

export type AccessPolicyStatus = {
  observedGeneration?: number;
  /** Current state, per the Kubernetes API conventions. */
  conditions?: Condition[];
};

/** One person's decision on a LangGraphRun waiting for approval, or on one command its sidecar holds. The admission webhook stamps the approver from the API server's authentication of the request (annotation langgraph-jit.dev/approver) and admits it only from an approver the run's policy names who is not the run's requester; it never changes afterwards. */
export interface Approval {
  apiVersion?: "langgraph-jit.dev/v1alpha1";
  kind?: "Approval";
  metadata?: V1ObjectMeta;
  spec: ApprovalSpec;
}

export type ApprovalSpec = {
  /** The LangGraphRun of this namespace that the decision is about. */
  run: string;
  /** A HeldCommand of that run: the decision is about this one command only. Absent, it is about the run itself (waiting in AwaitingApproval). */
  command?: string;
  decision: "Approve" | "Deny";
  /** Why; shown on the run and recorded for audit. */
  reason: string;
};

/** A downstream resource the platform holds for the namespaces it selects: its credentials live in the operator's credentials namespace, which no team reads, and AccessPolicies grant it by name only where namespaceSelector selects their namespace. */
export interface ClusterConnection {
  apiVersion?: "langgraph-jit.dev/v1alpha1";
  kind?: "ClusterConnection";
  metadata?: V1ObjectMeta;
  spec: ClusterConnectionSpec;
  status?: ClusterConnectionStatus;
}

export type ClusterConnectionSpec = {
  /** The namespaces whose AccessPolicies may grant this connection (a label selector; {} selects every namespace). Select on labels only the platform may set, such as kubernetes.io/metadata.name. */
  namespaceSelector: {
    matchLabels?: Record<string, string>;
    matchExpressions?: Array<{
      key: string;
      operator: "In" | "NotIn" | "Exists" | "DoesNotExist";
      values?: Array<string>;
    }>;
  };
  /** A PostgreSQL database. */
  postgres?: {
    /** Host name or IP address of the server. */
    host: string;
    /** TCP port of the server. */
    port: number;
    /** Database name the run connects to. */
    database: string;
    /** TLS towards the server: disable, require (encrypted, unverified) or verify-full (encrypted, certificate and host name verified). */
    sslMode: "disable" | "require" | "verify-full";
    /** A key of a Secret in the operator's credentials namespace. */
    caSecretRef?: {
      name: string;
      key: string;
    };
    /** The admin credential, and how run credentials are derived from it. */
    credentials: {
      /** Secret in the operator's credentials namespace with keys username and password. */
      secretRef: {
        name: string;
      };
      /** Mint a login role per run that is a member of the roles named here for the actions the run was granted, and drop it when the run ends. */
      dynamic?: {
        /** Existing role to grant membership in, per action. */
        actionRoles: {
          read?: string;
          write?: string;
          ddl?: string;
          admin?: string;
        };
      };
    };
  };
  /** An HTTP API. */
  http?: {
    /** Base URL of the API (http or https). */
    url: string;
    /** Whether the API's Set-Cookie reaches the graph. A session cookie is a credential derived from the connection's, so unless this is true it is dropped. */
    allowCookies?: boolean;
    /** A key of a Secret in the operator's credentials namespace. */
    caSecretRef?: {
      name: string;
      key: string;
    };
    /** How the sidecar authenticates to the API; exactly one method. */
    auth?: {
      /** Sends Authorization Bearer with the Secret's value. */
      bearer?: {
        /** A key of a Secret in the operator's credentials namespace. */
        secretRef: {
          name: string;
          key: string;
        };
      };
      /** Sends the Secret's value in the named header. */
      header?: {
        /** Header name, e.g. X-Api-Key. */
        name: string;
        /** A key of a Secret in the operator's credentials namespace. */
        secretRef: {
          name: string;
          key: string;
        };
      };
      /** Mints a token per run with the OAuth 2.0 client credentials grant. */
      oauth2ClientCredentials?: {
        tokenUrl: string;
        /** The server's RFC 7009 token revocation endpoint; tokens are revoked there when the run ends. Without it a token lives until it expires. */
        revocationUrl?: string;
        clientId: string;
        /** A key of a Secret in the operator's credentials namespace. */
        clientSecretRef: {
          name: string;
          key: string;
        };
        scopes?: Array<string>;
      };
    };
  };
};

export type ClusterConnectionStatus = {
  observedGeneration?: number;
  /** Current state, per the Kubernetes API conventions. */
  conditions?: Condition[];
};

/** A downstream resource (a PostgreSQL database or an HTTP API) whose credential only the operator holds. Runs reach it through the sidecar, never with the credential. */
export interface Connection {
  apiVersion?: "langgraph-jit.dev/v1alpha1";
  kind?: "Connection";
  metadata?: V1ObjectMeta;
  spec: ConnectionSpec;
  status?: ConnectionStatus;
}

export type ConnectionSpec = {
  /** A PostgreSQL database. */
  postgres?: {
    /** Host name or IP address of the server. */
    host: string;
    /** TCP port of the server. */
    port: number;
    /** Database name the run connects to. */
    database: string;
    /** TLS towards the server: disable, require (encrypted, unverified) or verify-full (encrypted, certificate and host name verified). */
    sslMode: "disable" | "require" | "verify-full";
    /** A key of a Secret in the same namespace. */
    caSecretRef?: {
      name: string;
      key: string;
    };
    /** The admin credential, and how run credentials are derived from it. */
    credentials: {
      /** Secret in the Connection's namespace with keys username and password. */
      secretRef: {
        name: string;
      };
      /** Mint a login role per run that is a member of the roles named here for the actions the run was granted, and drop it when the run ends. */
      dynamic?: {
        /** Existing role to grant membership in, per action. */
        actionRoles: {
          read?: string;
          write?: string;
          ddl?: string;
          admin?: string;
        };
      };
    };
  };
  /** An HTTP API. */
  http?: {
    /** Base URL of the API (http or https). */
    url: string;
    /** Whether the API's Set-Cookie reaches the graph. A session cookie is a credential derived from the connection's, so unless this is true it is dropped. */
    allowCookies?: boolean;
    /** A key of a Secret in the same namespace. */
    caSecretRef?: {
      name: string;
      key: string;
    };
    /** How the sidecar authenticates to the API; exactly one method. */
    auth?: {
      /** Sends Authorization Bearer with the Secret's value. */
      bearer?: {
        /** A key of a Secret in the same namespace. */
        secretRef: {
          name: string;
          key: string;
        };
      };
      /** Sends the Secret's value in the named header. */
      header?: {
        /** Header name, e.g. X-Api-Key. */
        name: string;
        /** A key of a Secret in the same namespace. */
        secretRef: {
          name: string;
          key: string;
        };
      };
      /** Mints a token per run with the OAuth 2.0 client credentials grant. */
      oauth2ClientCredentials?: {
        tokenUrl: string;
        /** The server's RFC 7009 token revocation endpoint; tokens are revoked there when the run ends. Without it a token lives until it expires. */
        revocationUrl?: string;
        clientId: string;
        /** A key of a Secret in the same namespace. */
        clientSecretRef: {
          name: string;
          key: string;
        };
        scopes?: Array<string>;
      };
    };
  };
};

export type ConnectionStatus = {
  observedGeneration?: number;
  /** Current state, per the Kubernetes API conventions. */
  conditions?: Condition[];
};

/** One command a run's sidecar holds for a human decision (an HTTP request or a SQL statement whose action the grant puts under approval), made by the operator when the sidecar asks, and by nobody else. The sidecar forwards it, exactly as held, only once enough approvers approved it; an Approval naming it decides this command only. */
export interface HeldCommand {
  apiVersion?: "langgraph-jit.dev/v1alpha1";
  kind?: "HeldCommand";
  metadata?: V1ObjectMeta;
  spec: HeldCommandSpec;
  status?: HeldCommandStatus;
}

export type HeldCommandSpec = {
  /** The LangGraphRun whose sidecar holds the command. */
  run: string;
  connection: string;
  action: "read" | "write" | "ddl" | "admin";
  /** The method and path, or the statement's start, for listings. */
  summary: string;
  http?: {
    method?: string;
    /** The normalized path and its query's names. */
    path?: string;
  };
  sql?: {
    /** The full statement text, as sent. */
    statement?: string;
  };
  /** What the held request carries; the approval is for this digest. */
  body?: {
    sha256?: string;
    bytes?: number;
  };
};

export type HeldCommandStatus = {
  phase?: "Pending" | "Approved" | "Denied" | "Expired";
  expiresAt?: string;
  message?: string;
  /** The AccessPolicy whose grant holds the command for approval. */
  policy?: string;
  approvers?: Array<{
    kind: "User" | "Group" | "ServiceAccount";
    name: string;
    namespace?: string;
  }>;
  approvals?: number;
  decisions?: Array<{
    approval: string;
    approver: string;
    decision: "Approve" | "Deny";
    reason: string;
    at: string;
  }>;
};

/** One execution of a LangGraph workflow with just-in-time access: the operator checks the requester against AccessPolicies and runs the graph in a Job whose sidecar holds a credential for exactly the granted access, revoked when the run ends. */
export interface LangGraphRun {
  apiVersion?: "langgraph-jit.dev/v1alpha1";
  kind?: "LangGraphRun";
  metadata?: V1ObjectMeta;
  spec: LangGraphRunSpec;
  status?: LangGraphRunStatus;
}

export type LangGraphRunSpec = {
  /** The tagged pod this run records (a pod of a Deployment, Job or CronJob that the pod webhook injected); only langgraph-jit creates such runs, and their requester is the pod's ServiceAccount. */
  source?: {
    pod: string;
    uid: string;
    /** The pod's controller, as Kind/name. */
    owner?: string;
  };
  /** Pod template of the graph container(s); the operator adds the sidecar. */
  template?: V1PodTemplateSpec;
  /** The Connections the run needs and the actions on each. */
  access: Array<{
    /** Name of a Connection in the run's namespace. */
    connection: string;
    actions: Array<"read" | "write" | "ddl" | "admin">;
  }>;
  /** Longest the run may last from its start; it is Expired after that. For a tagged pod's run: the longest one credential lives (it is re-issued while its policy still grants it, and the run lasts as long as the pod). */
  maxDuration: string;
  /** Why the run needs this access; recorded for audit. */
  reason?: string;
};

export type LangGraphRunStatus = {
  phase?: "Pending" | "AwaitingApproval" | "Denied" | "Running" | "Succeeded" | "Failed" | "Expired" | "Cancelled";
  /** Who created the run, as the API server authenticated them. */
  requester?: {
    username?: string;
    uid?: string;
    groups?: Array<string>;
    /** The authenticator's extra attributes, as SubjectAccessReviews need them. */
    extra?: Record<string, Array<string>>;
  };
  /** The human approval the run's policies require before it starts: who may decide, how many must approve, until when, and every decision counted. */
  approval?: {
    requestedAt?: string;
    expiresAt?: string;
    decidedAt?: string;
    /** One per AccessPolicy that requires approval; each must be met. */
    requirements?: Array<{
      policy: string;
      approvals: number;
      approvers: Array<{
        kind: "User" | "Group" | "ServiceAccount";
        name: string;
        namespace?: string;
      }>;
    }>;
    /** The Approvals counted, in the order they were made. */
    decisions?: Array<{
      /** The Approval object's name. */
      approval: string;
      approver: string;
      decision: "Approve" | "Deny";
      reason: string;
      at: string;
    }>;
  };
  jobName?: string;
  /** The uid of the Job the operator created; no other Job gets the run's credential. */
  jobUID?: string;
  /** The operator's MAC over the phase, start, deadline and Job it decided; a status written by anyone else is not trusted. */
  seal?: string;
  startedAt?: string;
  deadline?: string;
  completedAt?: string;
  credential?: {
    issuedAt?: string;
    expiresAt?: string;
    revokedAt?: string;
  };
  session?: {
    events?: number;
    denied?: number;
    masked?: number;
  };
  observedGeneration?: number;
  /** Current state, per the Kubernetes API conventions. */
  conditions?: Condition[];
};
