/**
 * A metav1.Condition as it travels in custom resources: plain JSON, so the transition time is
 * an RFC 3339 string (the client's V1Condition models a deserialized Date).
 */
export interface Condition {
  type: string;
  status: "True" | "False" | "Unknown";
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}
