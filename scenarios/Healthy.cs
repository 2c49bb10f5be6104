using System.Collections.Concurrent;

namespace DumpScope.Scenarios;

// An ordinary process that did its work and now idles: workers wait for the
// next job, nothing holds a monitor, nothing waits for finalization.

public sealed class Job
{
    public Job(int id) => Id = id;

    public int Id { get; }
}

public sealed class JobResult
{
    public JobResult(int id, long checksum)
    {
        Id = id;
        Checksum = checksum;
    }

    public int Id { get; }

    public long Checksum { get; }
}

internal static class Healthy
{
    private static readonly BlockingCollection<Job> Queue = new();
    private static readonly ConcurrentBag<JobResult> Results = new();

    internal static Facts Plant(string[] args)
    {
        int workerCount = (int)Args.Long(args, "--workers", 4);
        int jobCount = (int)Args.Long(args, "--jobs", 200);
        var done = new CountdownEvent(jobCount);
        var workers = new Dictionary<string, object?>[workerCount];
        var started = new CountdownEvent(workerCount);

        for (int w = 0; w < workerCount; w++)
        {
            int slot = w;
            new Thread(() =>
            {
                workers[slot] = ThreadFacts.Current();
                started.Signal();
                foreach (Job job in Queue.GetConsumingEnumerable())
                {
                    Results.Add(new JobResult(job.Id, Checksum(job.Id)));
                    done.Signal();
                }
            })
            { Name = $"Worker-{w + 1}", IsBackground = true }.Start();
        }
        started.Wait();
        for (int i = 0; i < jobCount; i++)
        {
            Queue.Add(new Job(i));
        }
        if (!done.Wait(TimeSpan.FromSeconds(30)))
        {
            throw new TimeoutException("timed out waiting for the jobs to finish");
        }
        Wait.ForBlockingToSettle();

        return new Facts
        {
            ["worker_threads"] = workers,
            ["jobs_completed"] = Results.Count,
            ["result_type"] = typeof(JobResult).FullName,
        };
    }

    private static long Checksum(int seed)
    {
        long sum = seed;
        for (int i = 0; i < 100_000; i++)
        {
            sum = sum * 31 + i;
        }
        return sum;
    }
}
